"""Interop: matrix-nio's end-to-end encryption (``matrix-nio[e2e]``, vodozemac) against Seed.

Two nio clients with encryption on: device keys and one-time keys uploaded, an encrypted
room, keys queried and claimed, the room key sent as a to-device message, and the message
decrypted on the other side. Run through ``tests/interop/run.sh``.
"""

from __future__ import annotations

import secrets
import tempfile

import nio
import pytest

from interop_helpers import (
    CALL_TIMEOUT,
    PASSWORD,
    RecordingClient,
    base_url,
    expect,
    register_and_login,
    run,
    within,
)


def encrypted_client(label: str, user: str, store: str) -> RecordingClient:
    config = nio.AsyncClientConfig(
        request_timeout=CALL_TIMEOUT,
        store_sync_tokens=True,
        encryption_enabled=True,
        store=nio.store.SqliteMemoryStore,
    )
    return RecordingClient(base_url(), user, store_path=store, config=config, label=label)


async def e2ee_login(tag: str, notes: list[str], store: str) -> RecordingClient:
    """A fresh account, then a new device with encryption on."""
    plain = await register_and_login(tag, notes)
    localpart = plain.user.lstrip("@").split(":")[0] if plain.user.startswith("@") else plain.user
    await plain.close()
    client = encrypted_client(tag, localpart, store)
    login = await within(client.login(PASSWORD, device_name=f"nio e2ee {tag}"), "login", client)
    expect(login, nio.LoginResponse, "login", client)
    assert client.olm is not None, "nio did not set up its Olm machine"
    return client


async def step(client: RecordingClient, *others: RecordingClient, timeout_ms: int = 500) -> nio.SyncResponse:
    """One sync plus the key work nio's sync_forever would do after it."""
    resp = expect(await within(client.sync(timeout=timeout_ms), "sync", client, *others), nio.SyncResponse, "sync", client)
    if client.should_upload_keys:
        expect(await within(client.keys_upload(), "keys_upload", client), nio.KeysUploadResponse, "keys_upload", client)
    if client.should_query_keys:
        expect(await within(client.keys_query(), "keys_query", client), nio.KeysQueryResponse, "keys_query", client)
    if client.should_claim_keys:
        users = client.get_users_for_key_claiming()
        expect(await within(client.keys_claim(users), "keys_claim", client), nio.KeysClaimResponse, "keys_claim", client)
    await within(client.send_to_device_messages(), "send_to_device_messages", client)
    return resp


def test_encrypted_message_is_decrypted_by_the_other_nio_client() -> None:
    async def body() -> None:
        notes: list[str] = []
        a = b = None
        with tempfile.TemporaryDirectory() as store_a, tempfile.TemporaryDirectory() as store_b:
            try:
                a = await e2ee_login("ea", notes, store_a)
                b = await e2ee_login("eb", notes, store_b)
                await step(a, timeout_ms=0)
                await step(b, timeout_ms=0)
                assert not a.should_upload_keys and not b.should_upload_keys, "keys were uploaded"

                created = await within(
                    a.room_create(
                        name="nio e2ee",
                        invite=[b.user_id],
                        initial_state=[nio.EnableEncryptionBuilder().as_dict()],
                    ),
                    "room_create",
                    a,
                )
                room_id = expect(created, nio.RoomCreateResponse, "room_create", a).room_id
                for _ in range(20):
                    await step(b, a)
                    if room_id in b.invited_rooms:
                        break
                assert room_id in b.invited_rooms, f"B was not invited\n{b.history()}"
                expect(await within(b.join(room_id), "join", b), nio.JoinResponse, "join", b)

                for _ in range(20):
                    await step(a, b)
                    room = a.rooms.get(room_id)
                    if room is not None and room.encrypted and b.user_id in room.users:
                        break
                room = a.rooms.get(room_id)
                assert room is not None and room.encrypted, "A does not see the room as encrypted"
                assert b.user_id in room.users, f"A does not see B joined\n{a.history()}"
                # A knows B's device (keys/query) before it encrypts for it.
                for _ in range(10):
                    if b.device_id in a.device_store[b.user_id]:
                        break
                    await step(a, b)
                assert b.device_id in a.device_store[b.user_id], f"A never learnt B's device\n{a.history()}"

                text = f"secret from nio {secrets.token_hex(4)}"
                sent = await within(
                    a.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text}, ignore_unverified_devices=True),
                    "room_send",
                    a,
                )
                expect(sent, nio.RoomSendResponse, "room_send", a)

                got: list[nio.Event] = []
                for _ in range(20):
                    resp = await step(b, a)
                    info = resp.rooms.join.get(room_id)
                    if info:
                        got.extend(e for e in info.timeline.events if getattr(e, "sender", None) == a.user_id)
                    if any(isinstance(e, nio.RoomMessageText) and e.body == text for e in got):
                        break
                decrypted = [e for e in got if isinstance(e, nio.RoomMessageText)]
                undecrypted = [e for e in got if isinstance(e, nio.MegolmEvent)]
                assert any(e.body == text for e in decrypted), (
                    f"B did not decrypt the message: {len(undecrypted)} undecryptable MegolmEvent(s)\n"
                    f"{b.history()}\n{a.history()}"
                )
                assert all(e.decrypted for e in decrypted if e.body == text)
            finally:
                for c in (a, b):
                    if c is not None:
                        await c.close()

    run(body)


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-v"])
