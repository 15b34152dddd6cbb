from loket_calendar.entrypoints.app import CalendarSettings, build_app
from loket_runtime.service import serve

settings = CalendarSettings()
serve(build_app(settings), settings)
