"""Path parameter types. Starlette's `int` accepts any number of digits, and Python
refuses to parse more than 4,300 of them (a 500); ids here have at most 18."""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor


class InstanceIdConvertor(Convertor[int]):
    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("instance_id", InstanceIdConvertor())
