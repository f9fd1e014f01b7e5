"""The billing DB: typed SQLAlchemy 2 models, the unit of work and repositories."""
