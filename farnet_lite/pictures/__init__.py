"""The pictures: figures of the paper (``plots``), the landmark viewer (``viewer``), the network diagram
(``diagram``)."""
