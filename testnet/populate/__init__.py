"""Deterministic scenario populator for the Synapse testnet (see testnet/synapse.sh)."""
