"""``/api/v1/auth``: login, refresh, change-password."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from kiok.master.api.deps import client_address, node_of, require
from kiok.master.auth import Principal
from kiok.security import actions
from kiok.security.passwords import MAX_PASSWORD_LENGTH

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class LoginRequest(BaseModel):
    #: As every request body: an unknown field is a 400, and so is a value of another JSON
    #: type than the field's (``"3600"`` for a number, ``"yes"`` for a boolean): no coercion.
    model_config = ConfigDict(extra="forbid", strict=True)
    user: str = Field(min_length=1, max_length=256)
    password: str = Field(max_length=MAX_PASSWORD_LENGTH)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # as every body
    refreshToken: str = Field(min_length=1, max_length=8192)


class ChangePasswordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # as every body
    oldPassword: str = Field(max_length=MAX_PASSWORD_LENGTH)
    newPassword: str = Field(max_length=MAX_PASSWORD_LENGTH)


class TokenResponse(BaseModel):
    accessToken: str
    refreshToken: str
    requirePasswordChange: bool
    tokenType: str = "Bearer"


@router.post("/login", response_model=TokenResponse, responses={401: {}, 429: {}})
async def login(body: LoginRequest, request: Request) -> Any:
    pair = await node_of(request).auth.login(body.user, body.password, client_address(request))
    return pair.to_json()


@router.post("/refresh", response_model=TokenResponse, responses={401: {}})
async def refresh(body: RefreshRequest, request: Request) -> Any:
    return (await node_of(request).auth.refresh(body.refreshToken)).to_json()


@router.post("/change-password", response_model=TokenResponse, responses={400: {}, 401: {}})
async def change_password(
    body: ChangePasswordRequest,
    request: Request,
    principal: Principal = Depends(require(actions.CHANGE_PASSWORD)),
) -> Any:
    pair = await node_of(request).auth.change_password(
        principal, body.oldPassword, body.newPassword, client_address(request)
    )
    return pair.to_json()
