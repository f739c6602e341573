"""Demo data: an owner account and N properties across a handful of cities."""

from __future__ import annotations

import random
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.models import Property, PropertyStatus, User
from api.security import Passwords

DEMO_EMAIL = "demo@example.com"
CITIES = ["Berlin", "Lisbon", "Madrid", "Paris", "Vienna", "Warsaw", "Prague", "Dublin"]
STREETS = ["Main St", "Harbour Rd", "Park Ave", "Mill Lane", "Station Sq", "Oak Row"]
KINDS = ["Flat", "Loft", "Townhouse", "Studio", "Maisonette", "Villa"]


async def seed(
    sessions: async_sessionmaker[AsyncSession],
    *,
    properties: int,
    demo_password: str,
    only_if_empty: bool = False,
    rng_seed: int = 7,
) -> int:
    """Insert demo properties owned by the demo user; returns how many were added."""
    rng = random.Random(rng_seed)  # noqa: S311 - demo data, not security
    async with sessions() as session:
        if only_if_empty and (await session.scalar(select(func.count(Property.id)))):
            return 0
        owner = await session.scalar(select(User).where(User.email == DEMO_EMAIL))
        if owner is None:
            owner = User(email=DEMO_EMAIL, password_hash=Passwords().hash(demo_password))
            session.add(owner)
            await session.flush()
        for _ in range(properties):
            bedrooms = rng.randint(0, 5)
            city = rng.choice(CITIES)
            session.add(
                Property(
                    owner_id=owner.id,
                    title=f"{rng.choice(KINDS)} with {bedrooms} bedrooms in {city}",
                    description="Demo listing.",
                    city=city,
                    address=f"{rng.randint(1, 250)} {rng.choice(STREETS)}",
                    price=Decimal(rng.randrange(80_000, 2_500_000, 500)),
                    bedrooms=bedrooms,
                    bathrooms=max(1, bedrooms // 2),
                    area_sqft=300 + bedrooms * rng.randint(200, 450),
                    status=rng.choice(list(PropertyStatus)),
                )
            )
        await session.commit()
    return properties
