"""
Every bad input, answered with a clear error, and nothing written.

- :mod:`tests.bad_input.world`: the stand-in, a misbehaving proxy, and one runner per public entry point
  (operator, sensor, hook methods, triggers, client, ``AuditLogQuery``, ``RetryPolicy``,
  ``RateLimiter``, and the archive check's operator, function and command), each turning a parameter
  set into what the user sees (an error, an error event, ``test_connection``'s answer, or the
  command's exit status 2 and message).
- :mod:`tests.bad_input.cases`: the table. Each row is a bad input, the error class, the fragments its
  message must hold (the problem, then what to change), and the entry points it is checked through;
  ``docs/bad-input.md`` is generated from it (``python -m tests.bad_input``) and checked against it.
- :mod:`tests.bad_input.test_bad_input`: runs every row through every entry point, and checks that the
  table covers every user-facing parameter and connection field.
"""
