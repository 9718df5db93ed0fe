"""The migrations build exactly the tables the code maps, with an index for every list query."""

from __future__ import annotations

from sqlalchemy import inspect

from stella.adapters.db.tables import POSTGRES_SCHEMA, metadata


def _schema(database):
    return POSTGRES_SCHEMA if database.kind == "postgresql" else None


def test_migrated_columns_match_the_table_definitions(database):
    inspector = inspect(database.engine)
    for table in metadata.sorted_tables:
        migrated = {c["name"] for c in inspector.get_columns(table.name, schema=_schema(database))}
        assert migrated == {c.name for c in table.columns}, table.name


def test_every_tenant_list_query_has_a_tenant_and_id_index(database):
    inspector = inspect(database.engine)
    for table in metadata.sorted_tables:
        never_listed = {"api_tokens", "deployment_artifacts", "target_observations"}
        # the chain is read by its primary key (tenant_id, seq), checkpoints by (tenant_id, size)
        never_listed |= {"audit_chain", "audit_chain_heads", "audit_checkpoints"}
        # security data is read by image digest or advisory id, never paged by id
        never_listed |= {"sbom_components", "advisories", "advisory_matches"}
        # browser sessions are read by the hash of their cookie
        never_listed |= {"web_sessions"}
        if "tenant_id" not in table.columns or table.name in {"environments", *never_listed}:
            continue  # environments list by (tenant_id, promotion_order); the rest are read by key
        indexes = [
            tuple(i["column_names"])
            for i in inspector.get_indexes(table.name, schema=_schema(database))
        ]
        assert ("tenant_id", "id") in indexes or any(
            ix[0] == "tenant_id" and ix[-1] == "id" for ix in indexes
        ), table.name
