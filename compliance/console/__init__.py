"""The legal team's review console: server-rendered pages over compliance.services and compliance.selectors."""
