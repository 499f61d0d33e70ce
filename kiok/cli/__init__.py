"""The ``kiok`` command line: ``main`` (the group and error reporting), ``context`` (global
options, test seams), ``client`` (HTTP to a master), ``masters`` (master addresses),
``credentials`` (saved contexts), ``output`` (formatting), and one module per noun: ``auth``,
``contexts``, ``dags``, ``runs``, ``logs``, ``admin``,
``cluster``, ``workers``, ``connections``, ``iam``, ``audit``; ``serve`` holds the server
commands. Nothing here is imported by the server side."""
