"""Test and reliability harnesses beside the package: `faults` (fault injection and the kill/resume check,
`python scripts/kill_resume.py`)."""
