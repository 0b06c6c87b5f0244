"""The reference solutions (never shipped to students)."""
