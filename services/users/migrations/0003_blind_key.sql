-- Which blind-index key a row's phone_index and email_index were computed
-- under, so a rotation can re-index row by row while lookups try every key,
-- and an old key can be retired once no row names it. Rows from before
-- rotation existed were indexed under the first key, b1.
ALTER TABLE users ADD COLUMN blind_key TEXT NOT NULL DEFAULT 'b1';
CREATE INDEX users_blind_key ON users (blind_key);
