"""Delivery: render a campaign's message (render), record every decision once (ledger, also the outbox), send it
on a channel (channels) with retries and dead letters (deliver)."""
