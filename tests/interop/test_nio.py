"""Interop: the real matrix-nio client library against a running Seed server.

Run through ``tests/interop/run.sh``, which starts the server and sets ``SEED_BASE_URL``.
"""

from __future__ import annotations

import os
import secrets

import nio
import pytest

from interop_helpers import (
    RecordingClient,
    bad_events,
    expect,
    register_and_login,
    run,
    sync_until,
    within,
)


async def _close(*clients: RecordingClient) -> None:
    for c in clients:
        try:
            await c.close()
        except Exception:  # noqa: BLE001 - closing must not hide the real failure
            pass


def test_register_login_room_message() -> None:
    async def body() -> None:
        notes: list[str] = []
        a = b = None
        try:
            a = await register_and_login("a", notes)
            b = await register_and_login("b", notes)
            clients = (a, b)

            created = await within(
                a.room_create(name="nio interop", topic="seed x matrix-nio", preset=nio.RoomPreset.public_chat),
                "room_create",
                a,
            )
            room_id = expect(created, nio.RoomCreateResponse, "room_create", a).room_id
            assert room_id.startswith("!"), f"bad room id {room_id!r}"

            # A sees its own room through sync, so nio's room model knows it.
            await sync_until(a, lambda r: room_id in r.rooms.join, "A sees the room it created", others=clients)
            assert room_id in a.rooms, f"nio did not add {room_id} to A.rooms"

            # B's initial sync gives it a since token; the message must then arrive incrementally.
            first = await within(b.sync(timeout=0), "B initial sync", b)
            expect(first, nio.SyncResponse, "B initial sync", b)

            joined = await within(b.join(room_id), "join", b)
            assert expect(joined, nio.JoinResponse, "join", b).room_id == room_id

            received: list[nio.RoomMessageText] = []

            async def on_message(room: nio.MatrixRoom, event: nio.RoomMessageText) -> None:
                if room.room_id == room_id:
                    received.append(event)

            b.add_event_callback(on_message, nio.RoomMessageText)

            text = f"hello from nio {secrets.token_hex(4)}"
            sent = await within(
                a.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text}),
                "room_send",
                a,
            )
            event_id = expect(sent, nio.RoomSendResponse, "room_send", a).event_id
            assert event_id.startswith("$"), f"bad event id {event_id!r}"

            def seen(resp: nio.SyncResponse) -> bool:
                problems = bad_events(resp)
                assert not problems, "nio could not parse events from /sync:\n" + "\n".join(problems)
                room = resp.rooms.join.get(room_id)
                return bool(room) and any(
                    isinstance(ev, nio.RoomMessageText) and ev.body == text for ev in room.timeline.events
                )

            await sync_until(b, seen, "B receives A's message", others=clients)

            assert received, "the RoomMessageText callback did not fire for the message"
            msg = received[-1]
            assert msg.body == text
            assert msg.sender == a.user_id, f"sender {msg.sender} != {a.user_id}"
            assert msg.event_id == event_id, f"event id {msg.event_id} != sent {event_id}"

            room = b.rooms.get(room_id)
            assert room is not None, f"nio did not add {room_id} to B.rooms"
            assert {a.user_id, b.user_id} <= set(room.users), f"B's view of members: {sorted(room.users)}"
            assert room.name == "nio interop", f"B's view of the room name: {room.name!r}"
        finally:
            if notes:
                print("interop notes:\n  " + "\n  ".join(notes))
            await _close(*(c for c in (a, b) if c is not None))

    run(body)


def test_presence() -> None:
    async def body() -> None:
        notes: list[str] = []
        a = b = None
        try:
            a = await register_and_login("pa", notes)
            b = await register_and_login("pb", notes)
            clients = (a, b)

            created = await within(a.room_create(name="presence", invite=[b.user_id]), "room_create", a)
            room_id = expect(created, nio.RoomCreateResponse, "room_create", a).room_id
            joined = await within(b.join(room_id), "join (invited)", b)
            expect(joined, nio.JoinResponse, "join (invited)", b)

            seen_presence: list[nio.PresenceEvent] = []

            async def on_presence(event: nio.PresenceEvent) -> None:
                if event.user_id == a.user_id:
                    seen_presence.append(event)

            b.add_presence_callback(on_presence, nio.PresenceEvent)
            first = await within(b.sync(timeout=0), "B initial sync", b)
            expect(first, nio.SyncResponse, "B initial sync", b)

            # A is a live client: it syncs (nio then sends set_presence with every sync).
            expect(await within(a.sync(timeout=0), "A sync", a), nio.SyncResponse, "A sync", a)
            set_resp = await within(a.set_presence("unavailable", "brb"), "set_presence", a)
            expect(set_resp, nio.PresenceSetResponse, "set_presence", a)
            expect(await within(a.sync(timeout=0), "A sync after set_presence", a), nio.SyncResponse, "A sync", a)

            got = await within(b.get_presence(a.user_id), "get_presence", b)
            got = expect(got, nio.PresenceGetResponse, "get_presence", b)
            assert got.presence == "unavailable", f"get_presence: presence {got.presence!r}, wanted 'unavailable'"
            assert got.status_msg == "brb", f"get_presence: status_msg {got.status_msg!r}, wanted 'brb'"

            def seen(_resp: nio.SyncResponse) -> bool:
                return any(ev.presence == "unavailable" and ev.status_msg == "brb" for ev in seen_presence)

            await sync_until(b, seen, "B's presence callback sees A unavailable/brb", others=clients)
            ev = next(ev for ev in seen_presence if ev.presence == "unavailable")
            assert ev.user_id == a.user_id
            user = b.rooms[room_id].users.get(a.user_id) if room_id in b.rooms else None
            if user is not None:
                assert user.presence == "unavailable", f"nio's MatrixUser.presence for A: {user.presence!r}"
        finally:
            if notes:
                print("interop notes:\n  " + "\n  ".join(notes))
            await _close(*(c for c in (a, b) if c is not None))

    run(body)


def test_typing_receipts_read_markers_redaction_context_forget() -> None:
    async def body() -> None:
        notes: list[str] = []
        a = b = None
        try:
            a = await register_and_login("xa", notes)
            b = await register_and_login("xb", notes)
            clients = (a, b)
            created = await within(a.room_create(name="extras", preset=nio.RoomPreset.public_chat), "room_create", a)
            room_id = expect(created, nio.RoomCreateResponse, "room_create", a).room_id
            expect(await within(b.join(room_id), "join", b), nio.JoinResponse, "join", b)
            for c in clients:
                expect(await within(c.sync(timeout=0), "initial sync", c), nio.SyncResponse, "initial sync", c)

            def ephemeral(resp: nio.SyncResponse, cls: type) -> list:
                problems = bad_events(resp)
                assert not problems, "nio could not parse events from /sync:\n" + "\n".join(problems)
                room = resp.rooms.join.get(room_id)
                return [ev for ev in (room.ephemeral if room else []) if isinstance(ev, cls)]

            # Typing reaches the other member.
            typing = await within(b.room_typing(room_id, True, 5000), "room_typing", b)
            expect(typing, nio.RoomTypingResponse, "room_typing", b)
            await sync_until(
                a,
                lambda r: any(b.user_id in ev.users for ev in ephemeral(r, nio.TypingNoticeEvent)),
                "A sees B typing",
                others=clients,
            )

            sent = await within(a.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "x"}), "send", a)
            event_id = expect(sent, nio.RoomSendResponse, "room_send", a).event_id

            # A read receipt and the fully-read marker.
            receipt = await within(b.update_receipt_marker(room_id, event_id), "update_receipt_marker", b)
            expect(receipt, nio.UpdateReceiptMarkerResponse, "update_receipt_marker", b)
            await sync_until(
                a,
                lambda r: any(
                    rc.user_id == b.user_id and rc.event_id == event_id
                    for ev in ephemeral(r, nio.ReceiptEvent)
                    for rc in ev.receipts
                ),
                "A sees B's read receipt",
                others=clients,
            )
            markers = await within(b.room_read_markers(room_id, event_id, event_id), "room_read_markers", b)
            expect(markers, nio.RoomReadMarkersResponse, "room_read_markers", b)

            def fully_read(resp: nio.SyncResponse) -> bool:
                room = resp.rooms.join.get(room_id)
                return bool(room) and any(
                    isinstance(ev, nio.FullyReadEvent) and ev.event_id == event_id for ev in room.account_data
                )

            await sync_until(b, fully_read, "B sees its fully-read marker", others=clients)

            # Context and single events, then a redaction nio understands.
            ctx = await within(a.room_context(room_id, event_id, limit=4), "room_context", a)
            ctx = expect(ctx, nio.RoomContextResponse, "room_context", a)
            assert ctx.event is not None and ctx.event.event_id == event_id, f"context event: {ctx.event}"
            got = await within(a.room_get_event(room_id, event_id), "room_get_event", a)
            assert expect(got, nio.RoomGetEventResponse, "room_get_event", a).event.event_id == event_id
            redact = await within(a.room_redact(room_id, event_id, reason="test"), "room_redact", a)
            expect(redact, nio.RoomRedactResponse, "room_redact", a)

            def redacted(resp: nio.SyncResponse) -> bool:
                room = resp.rooms.join.get(room_id)
                return bool(room) and any(
                    isinstance(ev, nio.RedactionEvent) and ev.redacts == event_id for ev in room.timeline.events
                )

            await sync_until(b, redacted, "B sees the redaction", others=clients)

            # Forget after leaving.
            expect(await within(b.room_leave(room_id), "room_leave", b), nio.RoomLeaveResponse, "room_leave", b)
            forget = await within(b.room_forget(room_id), "room_forget", b)
            expect(forget, nio.RoomForgetResponse, "room_forget", b)
        finally:
            if notes:
                print("interop notes:\n  " + "\n  ".join(notes))
            await _close(*(c for c in (a, b) if c is not None))

    run(body)


def test_new_room_mate_presence_arrives_without_a_change() -> None:
    """A nio client gets the presence of someone it just started sharing a room with, in its
    next incremental sync, although that user's presence did not change (msc/README.md §5)."""

    async def body() -> None:
        notes: list[str] = []
        a = b = None
        try:
            a = await register_and_login("na", notes)
            b = await register_and_login("nb", notes)
            clients = (a, b)

            # A is live and has a status; A and B share no room yet.
            expect(await within(a.sync(timeout=0), "A sync", a), nio.SyncResponse, "A sync", a)
            set_resp = await within(a.set_presence("unavailable", "in the garden"), "set_presence", a)
            expect(set_resp, nio.PresenceSetResponse, "set_presence", a)

            seen_presence: list[nio.PresenceEvent] = []

            async def on_presence(event: nio.PresenceEvent) -> None:
                if event.user_id == a.user_id:
                    seen_presence.append(event)

            b.add_presence_callback(on_presence, nio.PresenceEvent)
            first = await within(b.sync(timeout=0), "B initial sync", b)
            expect(first, nio.SyncResponse, "B initial sync", b)
            assert not seen_presence, f"B saw A's presence before sharing a room: {seen_presence}"

            # A invites B, B accepts. A's presence stays as it was.
            created = await within(a.room_create(name="garden", invite=[b.user_id]), "room_create", a)
            room_id = expect(created, nio.RoomCreateResponse, "room_create", a).room_id
            expect(await within(b.join(room_id), "join (invited)", b), nio.JoinResponse, "join (invited)", b)

            def seen(_resp: nio.SyncResponse) -> bool:
                return any(ev.presence == "unavailable" and ev.status_msg == "in the garden" for ev in seen_presence)

            await sync_until(b, seen, "B's presence callback gets its new room-mate A", deadline_s=10.0, others=clients)
        finally:
            if notes:
                print("interop notes:\n  " + "\n  ".join(notes))
            await _close(*(c for c in (a, b) if c is not None))

    run(body)


def test_busy_reaches_nio_in_the_msc3026_spelling() -> None:
    """`busy` goes out on the legacy paths as `org.matrix.msc3026.busy` (the default of
    `legacy_busy_as`); nio passes the value through as a string without rejecting the event."""

    async def body() -> None:
        notes: list[str] = []
        a = b = None
        try:
            a = await register_and_login("ba", notes)
            b = await register_and_login("bb", notes)
            clients = (a, b)
            created = await within(a.room_create(name="busy", invite=[b.user_id]), "room_create", a)
            room_id = expect(created, nio.RoomCreateResponse, "room_create", a).room_id
            expect(await within(b.join(room_id), "join (invited)", b), nio.JoinResponse, "join (invited)", b)

            seen_presence: list[nio.PresenceEvent] = []

            async def on_presence(event: nio.PresenceEvent) -> None:
                if event.user_id == a.user_id:
                    seen_presence.append(event)

            b.add_presence_callback(on_presence, nio.PresenceEvent)
            expect(await within(b.sync(timeout=0), "B initial sync", b), nio.SyncResponse, "B initial sync", b)
            expect(await within(a.sync(timeout=0), "A sync", a), nio.SyncResponse, "A sync", a)
            set_resp = await within(a.set_presence("busy", "on a call"), "set_presence busy", a)
            expect(set_resp, nio.PresenceSetResponse, "set_presence busy", a)

            def seen(_resp: nio.SyncResponse) -> bool:
                return any(ev.status_msg == "on a call" for ev in seen_presence)

            await sync_until(b, seen, "B's presence callback sees A busy", deadline_s=10.0, others=clients)
            ev = next(ev for ev in seen_presence if ev.status_msg == "on a call")
            assert ev.presence == "org.matrix.msc3026.busy", f"busy on the wire: {ev.presence!r}"
            got = expect(await within(b.get_presence(a.user_id), "get_presence", b), nio.PresenceGetResponse, "get", b)
            assert got.presence == "org.matrix.msc3026.busy", f"get_presence: {got.presence!r}"
        finally:
            if notes:
                print("interop notes:\n  " + "\n  ".join(notes))
            await _close(*(c for c in (a, b) if c is not None))

    run(body)
