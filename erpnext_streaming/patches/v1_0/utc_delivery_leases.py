"""Upgrade: every lease and retry time is UTC from the database's clock (`mariadb.utc_now`):
a company's (`lease_expires_at`, `next_attempt_at` on its Streaming Delivery Cursor) and an
Event Log row's (a Dead row's lease for its dead-letter copy, a Failed row's retry time).

The earlier version wrote them in the site's local time, from the drainer host's clock:
read as UTC they are hours off on a site not in UTC (a lease held far too long or taken at
once, a retry due hours late or at once). Which of them a drainer wrote cannot be told
apart, so this patch releases every lease and makes every pending retry due now (attempts
and last error stay; a Failed row then shows no retry time until it fails again): the next
drainer claims them at once and writes UTC from then on. A drainer of the earlier version
still running loses its leases, so it records no failure on those companies
(`bundles.still_leased`); what it delivered counts (a cursor only moves forward), and a
batch or a dead-letter copy may be sent again (at least once).

The Event Log's statements select by the indexed `lease_expires_at` and `next_attempt_at`
(a row's lease without an end is free already), so they read only the rows they change.
"""

import frappe

from erpnext_streaming.constants import CURSOR_TABLE, EVENT_LOG_TABLE


def execute():
	frappe.db.sql(
		f"UPDATE `{CURSOR_TABLE}` SET `lease_owner` = NULL, `lease_expires_at` = NULL, `next_attempt_at` = NULL "
		"WHERE `lease_owner` IS NOT NULL OR `lease_expires_at` IS NOT NULL OR `next_attempt_at` IS NOT NULL"
	)
	frappe.db.sql(
		f"UPDATE `{EVENT_LOG_TABLE}` SET `lease_owner` = NULL, `lease_expires_at` = NULL "
		"WHERE `lease_expires_at` IS NOT NULL"
	)
	frappe.db.sql(
		f"UPDATE `{EVENT_LOG_TABLE}` SET `next_attempt_at` = NULL WHERE `next_attempt_at` IS NOT NULL"
	)
