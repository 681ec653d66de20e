"""End-to-end checks written by QA: bioxen used the way a new user would."""
