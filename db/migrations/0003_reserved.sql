-- 0003: reserved for another branch's migration (placeholder so that 0004 applies in order;
-- replaced by that branch's file when merged).
SELECT 1;
