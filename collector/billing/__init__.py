"""Billing (抄核收): tariffs, reading cycles and segments, determinants from validated
reads, bill review, and prepaid balances with alerts and remote disconnect."""
