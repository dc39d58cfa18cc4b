"""The web console (``taskplane ui``): a JSON API and HTML pages over the read model.

    taskplane ui --port 8080          # read-only unless TASKPLANE_UI_TOKEN is set

Reads the Postgres read model (docs/read-model.md); writes ReplayTask and CancelRun
only through ``commands.CommandWriter``. See docs/console.md.
"""
