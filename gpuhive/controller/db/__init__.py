"""The controller's database schema: numbered migrations (see ``gpuhive.migrations``)."""
