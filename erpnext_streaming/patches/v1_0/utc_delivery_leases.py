"""Upgrade: a company's lease and retry time (`lease_expires_at`, `next_attempt_at` on its
Streaming Delivery Cursor) are UTC from the database's clock (`mariadb.utc_now`).

The earlier version wrote them in the site's local time, from the drainer host's clock:
read as UTC they are hours off on a site not in UTC (a lease held far too long or taken at
once, a retry due hours late or at once). Which of them a drainer wrote cannot be told
apart, so this patch releases every company's lease and makes every pending retry due now
(attempts and last error stay): the next drainer claims them at once and writes UTC from
then on. A drainer of the earlier version still running loses its leases, so it records
no failure on those companies (`bundles.still_leased`); what it delivered counts (a cursor
only moves forward), and a batch may be sent again (at least once).
"""

import frappe

from erpnext_streaming.constants import CURSOR_TABLE


def execute():
	frappe.db.sql(
		f"UPDATE `{CURSOR_TABLE}` SET `lease_owner` = NULL, `lease_expires_at` = NULL, `next_attempt_at` = NULL "
		"WHERE `lease_owner` IS NOT NULL OR `lease_expires_at` IS NOT NULL OR `next_attempt_at` IS NOT NULL"
	)
