"""Notifications to the patient at each step of the journey (docs/notifications.md)."""
