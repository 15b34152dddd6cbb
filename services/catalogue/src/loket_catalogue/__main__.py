from loket_runtime.service import serve

from loket_catalogue.entrypoints.app import CatalogueSettings, build_app

settings = CatalogueSettings()
serve(build_app(settings), settings)
