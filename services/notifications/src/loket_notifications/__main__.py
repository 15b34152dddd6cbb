import os

from loket_notifications.entrypoints.app import NotificationSettings, build_app
from loket_runtime.service import serve

settings = NotificationSettings()
if settings.niceness:
    os.nice(settings.niceness)  # behind the decisions: see NotificationSettings.niceness
serve(build_app(settings), settings)
