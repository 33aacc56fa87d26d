"""Writes a MaxMind-format (GeoIP2-City layout) test database.

Usage: write_mmdb.py OUT.mmdb < networks.json
where networks.json is [{"cidr": "192.0.2.0/24", "data": {...}}, ...] and
each data object is a GeoIP2 City record (city/country/location/traits...).
Integers are written as uint32 (AS numbers), floats as doubles.
"""

import json
import sys

from mmdb_writer import MMDBWriter
from netaddr import IPSet


def main() -> None:
    out = sys.argv[1]
    networks = json.load(sys.stdin)
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="GeoIP2-City",
        languages=["en"],
        description="qrlogin test database",
        int_type="u32",
    )
    for n in networks:
        writer.insert_network(IPSet([n["cidr"]]), n["data"])
    writer.to_db_file(out)


if __name__ == "__main__":
    main()
