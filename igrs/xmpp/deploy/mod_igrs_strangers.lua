-- IGRS strangers rule for Prosody 0.12 (specs/relay-xmpp-server.md, "Strangers rule").
-- Only related parties reach a local account: a message, IQ or directed presence that a local
-- user sends to another local account passes only when the TARGET's roster holds the sender
-- with a subscription (both, from or to -- written by the bind component or by an accepted
-- friend request). Anything else is answered service-unavailable (messages, IQ get/set) or
-- dropped (errors, results, presence), the same whether or not the target exists: the
-- answer comes from here, before the target is looked up. Subscription requests pass (they
-- are how a friend request is made); so do stanzas to oneself, to the server and to any
-- domain that is not a local user's (components, pubsub).

local jid_split = require "util.jid".split;
local st = require "util.stanza";
local rostermanager = require "core.rostermanager";

local RELATED = { both = true, from = true, to = true };
local SUBSCRIPTION = { subscribe = true, subscribed = true, unsubscribe = true, unsubscribed = true };

local function related(target_user, host, sender_bare)
	local roster = rostermanager.load_roster(target_user, host);
	local item = roster and roster[sender_bare];
	return item ~= nil and RELATED[item.subscription] == true;
end

local function filter(event)
	local origin, stanza = event.origin, event.stanza;
	local node, host = jid_split(stanza.attr.to);
	if not node or host ~= module.host or origin.type ~= "c2s" or not origin.username then
		return; -- the server, a component, another domain: not a user-to-user stanza
	end
	if node == origin.username then return; end -- oneself (other resources, PEP, roster)
	local name, stype = stanza.name, stanza.attr.type;
	if name == "presence" and SUBSCRIPTION[stype] then return; end
	if related(node, host, origin.username .. "@" .. origin.host) then return; end
	if (name == "message" and stype ~= "error") or (name == "iq" and (stype == "get" or stype == "set")) then
		origin.send(st.error_reply(stanza, "cancel", "service-unavailable"));
	end
	module:log("debug", "strangers rule: %s from %s to %s refused", name, origin.full_jid, stanza.attr.to);
	return true;
end

-- Before every other pre-* handler (mod_presence, mod_carbons, ...): priority 1000.
for _, name in ipairs({ "message", "iq", "presence" }) do
	module:hook("pre-" .. name .. "/bare", filter, 1000);
	module:hook("pre-" .. name .. "/full", filter, 1000);
end
