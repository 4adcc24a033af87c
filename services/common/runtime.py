"""What every function does before handling a message: read settings, bind the table."""

from __future__ import annotations

from services.common import store
from services.common.settings import Settings, get_settings


def prepare() -> Settings:
    settings = get_settings()
    store.bind_table(settings.table_name, settings.region)
    return settings
