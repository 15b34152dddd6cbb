from loket_booking.entrypoints.app import BookingSettings, build_app
from loket_runtime.service import serve

settings = BookingSettings()
serve(build_app(settings), settings)
