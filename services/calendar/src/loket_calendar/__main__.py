from loket_runtime.service import serve

from loket_calendar.entrypoints.app import CalendarSettings, build_app

settings = CalendarSettings()
serve(build_app(settings), settings)
