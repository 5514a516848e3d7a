"""What the demo shop sells, at its own prices: the only source of an order's amount."""

from __future__ import annotations

from dataclasses import dataclass

from shared.money import Money


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    name: str
    description: str
    price: Money

    @property
    def price_label(self) -> str:
        return f"{self.price.format_value()} {self.price.currency}"


CATALOGUE: tuple[Product, ...] = (
    Product(
        "headphones",
        "Noise-cancelling headphones",
        "Over-ear, 30 hours of battery.",
        Money.parse("129.90", "EUR"),
    ),
    Product(
        "earbuds",
        "Wireless earbuds",
        "In-ear, with a charging case.",
        Money.parse("59.00", "EUR"),
    ),
    Product(
        "stand",
        "Headphone stand",
        "Oak, for one pair.",
        Money.parse("24.50", "EUR"),
    ),
)

_BY_ID = {product.id: product for product in CATALOGUE}


def find_product(product_id: str) -> Product | None:
    """The product with this id, or None."""
    return _BY_ID.get(product_id)
