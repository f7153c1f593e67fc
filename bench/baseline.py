"""The baseline: what a team would hand-roll on the same stack, without Hearth's safeguards.

Same web framework (Starlette under uvicorn), same database engines and durability settings
(SQLite WAL with synchronous=FULL; PostgreSQL through psycopg 3), the same bearer-token check
and FHIR-ish routes, and a plain table holding each resource as JSON text with a version
counter. No sealing, no MAC, no audit, no validation, no policy.

Run: ``python -m bench.baseline --database URL --port PORT --token TOKEN``
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime

import orjson
import uvicorn
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
    update,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

metadata = MetaData()
resource = Table(
    "baseline_resource",
    metadata,
    Column("res_type", String(64), primary_key=True),
    Column("res_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("body", Text, nullable=False),
)
history = Table(
    "baseline_history",
    metadata,
    Column("res_type", String(64), primary_key=True),
    Column("res_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("body", Text, nullable=False),
)

FHIR = "application/fhir+json"


def build(database: str, token: str) -> Starlette:
    if database.startswith("postgresql://"):
        database = database.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(database, pool_size=16, max_overflow=16)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def pragmas(conn: object, _record: object) -> None:
            cursor = conn.cursor()  # type: ignore[attr-defined]
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    metadata.create_all(engine)
    expected = f"Bearer {token}"

    def authorised(request: Request) -> bool:
        return request.headers.get("authorization") == expected

    def read(request: Request) -> Response:
        if not authorised(request):
            return Response(status_code=401)
        with engine.connect() as conn:
            body = conn.execute(
                select(resource.c.body).where(
                    resource.c.res_type == request.path_params["type"],
                    resource.c.res_id == request.path_params["id"],
                )
            ).scalar_one_or_none()
        if body is None:
            return Response(status_code=404)
        return Response(body, media_type=FHIR)

    async def create(request: Request) -> Response:
        if not authorised(request):
            return Response(status_code=401)
        data = orjson.loads(await request.body())
        res_type = request.path_params["type"]
        res_id = str(uuid.uuid4())
        data["id"] = res_id
        data["meta"] = {"versionId": "1", "lastUpdated": datetime.now(UTC).isoformat()}
        body = orjson.dumps(data).decode()

        def write() -> None:
            with engine.begin() as conn:
                conn.execute(
                    insert(resource).values(res_type=res_type, res_id=res_id, version=1, body=body)
                )
                conn.execute(
                    insert(history).values(res_type=res_type, res_id=res_id, version=1, body=body)
                )

        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(write)
        return Response(
            body,
            status_code=201,
            media_type=FHIR,
            headers={"Location": f"/fhir/{res_type}/{res_id}/_history/1"},
        )

    async def put(request: Request) -> Response:
        if not authorised(request):
            return Response(status_code=401)
        data = orjson.loads(await request.body())
        res_type, res_id = request.path_params["type"], request.path_params["id"]

        def write() -> bytes:
            with engine.begin() as conn:
                current = conn.execute(
                    select(resource.c.version)
                    .where(resource.c.res_type == res_type, resource.c.res_id == res_id)
                    .with_for_update()
                ).scalar_one_or_none()
                version = (current or 0) + 1
                data["meta"] = {
                    "versionId": str(version),
                    "lastUpdated": datetime.now(UTC).isoformat(),
                }
                body = orjson.dumps(data).decode()
                if current is None:
                    conn.execute(
                        insert(resource).values(
                            res_type=res_type, res_id=res_id, version=1, body=body
                        )
                    )
                else:
                    conn.execute(
                        update(resource)
                        .where(resource.c.res_type == res_type, resource.c.res_id == res_id)
                        .values(version=version, body=body)
                    )
                conn.execute(
                    insert(history).values(
                        res_type=res_type, res_id=res_id, version=version, body=body
                    )
                )
                return body.encode()

        from starlette.concurrency import run_in_threadpool

        body = await run_in_threadpool(write)
        return Response(body, media_type=FHIR)

    def read_history(request: Request) -> Response:
        if not authorised(request):
            return Response(status_code=401)
        with engine.connect() as conn:
            rows = conn.execute(
                select(history.c.version, history.c.body)
                .where(
                    history.c.res_type == request.path_params["type"],
                    history.c.res_id == request.path_params["id"],
                )
                .order_by(history.c.version.desc())
                .limit(50)
            ).all()
        bundle = {
            "resourceType": "Bundle",
            "type": "history",
            "total": len(rows),
            "entry": [{"resource": orjson.loads(body)} for _v, body in rows],
        }
        return Response(orjson.dumps(bundle), media_type=FHIR)

    def metadata_route(_request: Request) -> Response:
        return Response(b'{"resourceType":"CapabilityStatement"}', media_type=FHIR)

    return Starlette(
        routes=[
            Route("/fhir/metadata", metadata_route),
            Route("/fhir/{type}/{id}/_history", read_history),
            Route("/fhir/{type}/{id}", read, methods=["GET"]),
            Route("/fhir/{type}/{id}", put, methods=["PUT"]),
            Route("/fhir/{type}", create, methods=["POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    uvicorn.run(
        build(args.database, args.token),
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
