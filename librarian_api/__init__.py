"""The Starlette service: submits runs through Dagster's GraphQL API and streams job events."""
