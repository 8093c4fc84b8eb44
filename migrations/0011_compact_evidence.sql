-- Equivocation evidence is now the compact proof (two header hashes and
-- the primary's two signatures over ⟨view, height, digest⟩), which is what
-- a chain transaction carries. Rows of the old form (two whole signed
-- pre-prepares, signed over the block) cannot be checked under the new
-- signing rule, so they are dropped.
DELETE FROM evidence;
