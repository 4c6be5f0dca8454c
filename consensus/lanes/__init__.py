"""Sedna lanes: rateless-coded, verifiable, private-until-decode payloads (docs/lanes.md).

Pure modules (no clock, no randomness, no I/O): parameters and layout (`params`), the
package transform (`aont`), codecs (`codecs`), the Merkle commitment (`merkle`), wire
types (`wire`), encoding/decoding (`encoding`), tickets (`tickets`), the sender
(`sender`), the lane proposer and withholding (`proposer`), the block payload and its
validator (`payload`, carried mode), certified lanes: lane chains, votes and PoAs
(`chain`), the availability layer (`availability`) and tip cuts (`cut`), the decode
tracker (`tracker`) and an in-process pipeline (`local`).
"""
