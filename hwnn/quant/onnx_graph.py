"""What the ONNX and QONNX importers share about reading a graph's nodes."""

__all__ = ["node_attributes"]


def node_attributes(node, defaults, where) -> dict:
    """``node``'s attributes as Python values (strings decoded), ``defaults`` filling in; an
    attribute not in ``defaults`` is refused with a ValueError that ``where`` (the node as
    messages name it) begins."""
    from onnx import helper
    values = dict(defaults)
    for attribute in node.attribute:
        if attribute.name not in defaults:
            raise ValueError(f"{where} has attribute {attribute.name!r}, which hwnn does not "
                             f"import")
        value = helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values
