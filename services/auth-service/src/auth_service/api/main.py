"""Every router, collected in one place."""

from fastapi import APIRouter

from auth_service.api.routes import auth, health, users

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(users.router)
api_router.include_router(auth.router)
