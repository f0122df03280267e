"""Statutory response deadlines, counted from receipt."""

import calendar
from datetime import datetime, timedelta


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar months, clamped to the month's last day (31 January + 1 month = 28/29 February)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def response_due(received_at: datetime, jurisdiction: str) -> datetime:
    """GDPR Art. 12(3): one month. CCPA/CPRA: 45 calendar days. (compliance.services.extend_deadline extends it once.)"""
    if jurisdiction == "ccpa":
        return received_at + timedelta(days=45)
    return add_months(received_at, 1)


def extended_due(due_at: datetime, jurisdiction: str) -> datetime:
    """The one extension: GDPR Art. 12(3), two further months; CCPA/CPRA, a further 45 days."""
    if jurisdiction == "ccpa":
        return due_at + timedelta(days=45)
    return add_months(due_at, 2)
