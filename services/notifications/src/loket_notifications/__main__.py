from loket_notifications.entrypoints.app import NotificationSettings, build_app
from loket_runtime.service import serve

settings = NotificationSettings()
serve(build_app(settings), settings)
