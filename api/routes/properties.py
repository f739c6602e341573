"""Property listings: cached reads, owner-only writes, change events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import ClaimsDep, ServicesDep, SessionDep, services_of
from api.errors import Forbidden, NotFound
from api.events import Event
from api.models import Property
from api.schemas import (
    PropertyCreate,
    PropertyFilters,
    PropertyOut,
    PropertyPage,
    PropertyUpdate,
)
from api.services import Services

router = APIRouter(prefix="/properties", tags=["properties"])

# Invalidation is as narrow as a write's reach: a list filtered by city depends only on
# that city's listings, an unfiltered list on all of them, an item on itself.
ALL_LISTS = "properties:all"


def city_namespace(city: str) -> str:
    return f"properties:city:{city.lower()}"


def item_namespace(property_id: int) -> str:
    return f"properties:item:{property_id}"


PropertyId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The property's id")]


async def _list(services: Services, filters: PropertyFilters) -> bytes:
    query = select(Property)
    if filters.city is not None:
        query = query.where(func.lower(Property.city) == filters.city.lower())
    if filters.min_price is not None:
        query = query.where(Property.price >= filters.min_price)
    if filters.max_price is not None:
        query = query.where(Property.price <= filters.max_price)
    if filters.bedrooms is not None:
        query = query.where(Property.bedrooms == filters.bedrooms)
    if filters.status is not None:
        query = query.where(Property.status == filters.status)
    query = query.order_by(Property.id).limit(filters.limit).offset(filters.offset)
    async with services.sessions() as session:
        rows = (await session.scalars(query)).all()
    page = PropertyPage(
        items=[PropertyOut.model_validate(row) for row in rows],
        limit=filters.limit,
        offset=filters.offset,
    )
    return page.model_dump_json().encode()


# Cached responses are stored as their final JSON body and sent as is: a hit costs one
# Redis round trip and no (de)serialisation. A load opens its own database session, so a
# hit opens none, and a load outlives the request that started it (single flight) safely.
@router.get("", response_model=PropertyPage)
async def list_properties(
    filters: Annotated[PropertyFilters, Query()], request: Request
) -> Response:
    services = services_of(request)
    body = await services.cache.cached_bytes(
        f"list:{filters.cache_key()}",
        services.settings.cache_ttl_seconds,
        lambda: _list(services, filters),
        namespace=city_namespace(filters.city) if filters.city else ALL_LISTS,
    )
    return Response(body, media_type="application/json")


async def _get(session: AsyncSession, property_id: int) -> Property:
    found = await session.get(Property, property_id)
    if found is None:
        raise NotFound(f"property {property_id} not found")
    return found


async def _get_owned(session: AsyncSession, property_id: int, user_id: int) -> Property:
    found = await _get(session, property_id)
    if found.owner_id != user_id:
        raise Forbidden(f"property {property_id} belongs to another user")
    return found


async def _changed(
    services: Services, *, kind: str, prop_id: int, cities: set[str], prop: Property | None
) -> None:
    await services.cache.invalidate(
        ALL_LISTS, item_namespace(prop_id), *(city_namespace(city) for city in cities)
    )
    data = PropertyOut.model_validate(prop).model_dump(mode="json") if prop is not None else None
    await services.broadcaster.publish(Event(type=f"property.{kind}", id=prop_id, data=data))


@router.get("/{property_id}", response_model=PropertyOut)
async def get_property(property_id: PropertyId, request: Request) -> Response:
    services = services_of(request)

    async def load() -> bytes:
        async with services.sessions() as session:
            found = await _get(session, property_id)
            return PropertyOut.model_validate(found).model_dump_json().encode()

    body = await services.cache.cached_bytes(
        f"item:{property_id}",
        services.settings.cache_ttl_seconds,
        load,
        namespace=item_namespace(property_id),
    )
    return Response(body, media_type="application/json")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PropertyOut)
async def create_property(
    body: PropertyCreate,
    claims: ClaimsDep,
    services: ServicesDep,
    session: SessionDep,
    response: Response,
) -> Property:
    prop = Property(owner_id=claims.user_id, **body.model_dump())
    session.add(prop)
    await session.commit()
    await session.refresh(prop)
    await _changed(services, kind="created", prop_id=prop.id, cities={prop.city}, prop=prop)
    response.headers["Location"] = f"/properties/{prop.id}"
    return prop


@router.patch("/{property_id}", response_model=PropertyOut)
async def update_property(
    property_id: PropertyId,
    body: PropertyUpdate,
    claims: ClaimsDep,
    services: ServicesDep,
    session: SessionDep,
) -> Property:
    prop = await _get_owned(session, property_id, claims.user_id)
    cities = {prop.city}  # a listing moved to another city leaves the old city's lists
    for name, value in body.model_dump(exclude_unset=True).items():
        setattr(prop, name, value)
    await session.commit()
    await session.refresh(prop)
    cities.add(prop.city)
    await _changed(services, kind="updated", prop_id=prop.id, cities=cities, prop=prop)
    return prop


@router.delete("/{property_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_property(
    property_id: PropertyId, claims: ClaimsDep, services: ServicesDep, session: SessionDep
) -> Response:
    prop = await _get_owned(session, property_id, claims.user_id)
    city = prop.city
    await session.delete(prop)
    await session.commit()
    await _changed(services, kind="deleted", prop_id=property_id, cities={city}, prop=None)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
