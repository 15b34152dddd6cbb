from loket_runtime.service import serve

from loket_booking.entrypoints.app import BookingSettings, build_app

settings = BookingSettings()
serve(build_app(settings), settings)
