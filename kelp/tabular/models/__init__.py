"""The tree models behind one contract (:class:`TreeModel`); pick them by name through
``kelp.tabular.registry`` so each library is imported only when used."""

from kelp.tabular.models.base import TreeModel

__all__ = ["TreeModel"]
