"""Repositories: the queries each area of the console runs, one module per area.

Services ask a repository for rows or write through it instead of building SQL on
`uow.session` themselves (cosmicpython's repository pattern): the same query lives in one
place, and a service reads as the steps of its job. A repository takes the open
`UnitOfWork` (the service owns the transaction and commits); it never commits itself.
"""
