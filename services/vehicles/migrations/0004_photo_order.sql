-- The order an admin gives a vehicle's photos (the first is its cover).
-- Photos stored before this have display_order 0 and keep their upload order
-- (by id) until they are reordered; new ones go to the end.
ALTER TABLE vehicle_photos ADD COLUMN display_order BIGINT NOT NULL DEFAULT 0;
