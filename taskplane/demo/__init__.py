"""``taskplane demo`` (docs/demo.md): ``run`` drives it, ``payments`` is the example's
tool module, ``worker`` the worker process, ``report`` what it prints at the end."""
