"""Request and response bodies. Unknown fields are rejected everywhere."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    PlainSerializer,
    StringConstraints,
    model_validator,
)

from api.models import PropertyStatus

MAX_PRICE = Decimal("1000000000000")
Price = Annotated[
    Decimal,
    Field(ge=0, le=MAX_PRICE, max_digits=14, decimal_places=2),
    PlainSerializer(float, return_type=float, when_used="json"),
]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
City = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Address = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Description = Annotated[str, StringConstraints(max_length=5000)]
Rooms = Annotated[int, Field(ge=0, le=100)]
Area = Annotated[int, Field(ge=1, le=10_000_000)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Credentials(Input):
    email: EmailStr = Field(max_length=320)
    password: str = Field(min_length=8, max_length=256)


class RefreshRequest(Input):
    refresh_token: str = Field(min_length=1, max_length=512)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str


class PropertyCreate(Input):
    title: Title
    description: Description = ""
    city: City
    address: Address
    price: Price
    bedrooms: Rooms
    bathrooms: Rooms
    area_sqft: Area
    status: PropertyStatus = PropertyStatus.AVAILABLE


class PropertyUpdate(Input):
    title: Title | None = None
    description: Description | None = None
    city: City | None = None
    address: Address | None = None
    price: Price | None = None
    bedrooms: Rooms | None = None
    bathrooms: Rooms | None = None
    area_sqft: Area | None = None
    status: PropertyStatus | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = sorted(k for k, v in data.items() if v is None)
            if nulls:
                raise ValueError(f"fields cannot be null: {', '.join(nulls)}")
            if not data:
                raise ValueError("the update names no field")
        return data


class PropertyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    owner_id: int
    title: str
    description: str
    city: str
    address: str
    price: Price
    bedrooms: int
    bathrooms: int
    area_sqft: int
    status: PropertyStatus
    created_at: datetime
    updated_at: datetime


class PropertyFilters(Input):
    """The query string of ``GET /properties``, normalised so equal queries share a cache key."""

    city: City | None = None
    min_price: Price | None = None
    max_price: Price | None = None
    bedrooms: Rooms | None = None
    status: PropertyStatus | None = None
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=10_000)

    @model_validator(mode="after")
    def _price_range(self) -> PropertyFilters:
        if (
            self.min_price is not None
            and self.max_price is not None
            and self.min_price > self.max_price
        ):
            raise ValueError("min_price must not exceed max_price")
        return self

    def cache_key(self) -> str:
        parts = []
        for name, value in sorted(self.model_dump(exclude_none=True).items()):
            if name == "city":
                value = str(value).lower()
            elif isinstance(value, Decimal):
                value = format(value.normalize(), "f")
            parts.append(f"{name}={value}")
        return "&".join(parts)


class PropertyPage(BaseModel):
    items: list[PropertyOut]
    limit: int
    offset: int
