"""Great Expectations suites (GX 1.x JSON), one per checked dataset.

Edit the JSON to change the checks; `meta.on_failure` is "quarantine" (set the
failing rows aside) or "block" (stop the publish). See tasks/quality/suites.py.
"""
