"""The interactive front end: prompt_toolkit on a terminal (``app``), plain lines otherwise (``plain``).

One module per concern, after ptpython: ``app`` (the loop), ``completer``,
``lexer``, ``key_bindings``, ``history``, ``toolbar``, ``printer``, ``styles``.
"""
