"""Offline checks of infra/ (Bicep), run in the infra tool venv by infra/check.sh."""
