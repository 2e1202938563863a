-- The change feed under `--revocation-scope account|all`: a commit that touches one key of a
-- subscriber answers again every key of the group that optout has seen (a row in opt_status
-- or change_heads), and a key opted out by another scope's opt-out records where that opt-out
-- was sent.
--
-- origin_account_sid, origin_scope: for the reasons `account_opt_out` and
-- `all_accounts_opt_out`, the account and scope of the opt-out; NULL otherwise (and for every
-- change written before this migration).
ALTER TABLE changes ADD COLUMN origin_account_sid TEXT;
ALTER TABLE changes ADD COLUMN origin_scope TEXT;

-- The group of a key is found by subscriber: opt_status has that index since migration 1;
-- change_heads gets it here, so the look is a short range read whatever the store's size.
CREATE INDEX change_heads_by_subscriber ON change_heads (subscriber);
