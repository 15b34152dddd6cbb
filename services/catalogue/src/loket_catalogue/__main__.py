from loket_catalogue.entrypoints.app import CatalogueSettings, build_app
from loket_runtime.service import serve

settings = CatalogueSettings()
serve(build_app(settings), settings)
