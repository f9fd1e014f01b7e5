"""Billing: subscriptions, invoices, schedules, test clocks, the billing calendar, retries, discounts,
credit notes, Checkout and portal sessions."""
