from tests.api_fixtures import api, api_any_db

__all__ = ["api", "api_any_db"]
